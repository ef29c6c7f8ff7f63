//! The Markdown report: absolute figures, ratios against the floor and each peer, and the
//! targets the project set itself.

use std::fmt::Write;

use crate::plan::{ClientSpec, CLIENTS};
use crate::protocol::{Percentiles, Scenario};
use crate::results::{per, LockRun, Results, NOISY};

/// The client every target is about.
const OURS: &str = "quorumlock";
/// The floor every throughput target is relative to.
const FLOOR: &str = "raw";
/// The same floor on the multi-thread runtime, for the multi-thread rows.
const FLOOR_MT: &str = "raw-mt";

/// The floor run a client's run is measured against: the floor on the same runtime when it
/// ran, else the current-thread one.
fn floor_of<'a>(
    results: &'a Results,
    nodes: usize,
    scenario: Scenario,
    client: &str,
) -> Option<&'a LockRun> {
    let same_runtime = if client.ends_with("-mt") {
        results.lock_run(nodes, scenario, FLOOR_MT)
    } else {
        None
    };
    same_runtime.or_else(|| results.lock_run(nodes, scenario, FLOOR))
}

/// The whole report.
pub fn render(results: &Results) -> String {
    let mut out = String::new();
    let env = &results.environment;
    let _ = writeln!(
        out,
        "Run: {} · {} cores · {} · node {} · wrk {} · TTL {} s · {} · clients run one after another",
        if results.quick { "quick" } else { "full" },
        env.cores,
        env.redis,
        env.node.as_deref().unwrap_or("absent"),
        env.wrk.as_deref().unwrap_or("absent"),
        results.ttl_ms / 1000,
        results.retry,
    );
    let mut sizes: Vec<usize> = results.lock_runs.iter().map(|run| run.nodes).collect();
    sizes.dedup();
    for nodes in sizes {
        pairs_table(&mut out, results, nodes);
        handoff_table(&mut out, results, nodes);
        ratio_table(&mut out, results, nodes);
    }
    http_table(&mut out, results);
    core_table(&mut out, results);
    targets_table(&mut out, results);
    if results.lock_runs.iter().any(LockRun::is_noisy) {
        let _ = writeln!(
            out,
            "\n† In the scenarios named, other processes kept more than {:.0}% of the cores busy during the measurement: those figures are disturbed.",
            NOISY * 100.0
        );
    }
    if !results.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for note in &results.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    out
}

fn pairs_table(out: &mut String, results: &Results, nodes: usize) {
    let sizes = &results.sizes;
    let ran = |client: &ClientSpec| {
        results
            .lock_run(nodes, Scenario::Latency, client.id)
            .is_some()
            || results
                .lock_run(nodes, Scenario::Throughput, client.id)
                .is_some()
    };
    if !CLIENTS.iter().any(ran) {
        return;
    }
    let _ = writeln!(
        out,
        "\n#### {nodes} nodes: S1 latency ({} sequential pairs) · S2 throughput ({} tasks, {} s) — median of {rounds} interleaved rounds\n",
        thousands(sizes.latency_pairs as f64),
        sizes.throughput_tasks,
        sizes.throughput_ms as f64 / 1000.0,
        rounds = sizes.rounds,
    );
    out.push_str("| client | S1 pairs/s | ×floor | S1 lock p50/p99 µs | S1 release p50/p99 µs | S2 pairs/s | ×floor | S2 lock p50/p99 µs | client CPU µs/pair | ×floor | Redis CPU µs/pair | Redis commands/pair |\n");
    out.push_str(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for client in CLIENTS {
        let s1 = results.lock_run(nodes, Scenario::Latency, client.id);
        let s2 = results.lock_run(nodes, Scenario::Throughput, client.id);
        let floor_s1 = floor_of(results, nodes, Scenario::Latency, client.id);
        let floor_s2 = floor_of(results, nodes, Scenario::Throughput, client.id);
        if s1.is_none() && s2.is_none() {
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            label(&client, &[s1, s2]),
            cell(s1, |run| thousands(run.rate())),
            ratio_cell(s1, floor_s1, LockRun::rate),
            cell(s1, |run| micros_pair(&run.measured.lock)),
            cell(s1, |run| micros_pair(&run.measured.release)),
            cell(s2, |run| thousands(run.rate())),
            ratio_cell(s2, floor_s2, LockRun::rate),
            cell(s2, |run| micros_pair(&run.measured.lock)),
            cell(s2, |run| format!("{:.1}", run.client_cpu_per_op())),
            ratio_cell(s2, floor_s2, LockRun::client_cpu_per_op),
            cell(s2, |run| format!("{:.1}", run.redis_cpu_per_op())),
            cell(s2, |run| format!("{:.1}", run.commands_per_op())),
        );
    }
}

fn handoff_table(out: &mut String, results: &Results, nodes: usize) {
    let sizes = &results.sizes;
    let ran = |client: &&ClientSpec| {
        results
            .lock_run(nodes, Scenario::Handoff, client.id)
            .is_some()
    };
    if !CLIENTS.iter().any(|client| ran(&client)) {
        return;
    }
    let _ = writeln!(
        out,
        "\n#### {nodes} nodes: S3 hand-off ({} contenders on one resource, ~{} ms hold, {} s) — median of {rounds} interleaved rounds\n",
        sizes.handoff_contenders,
        sizes.handoff_hold_us as f64 / 1000.0,
        sizes.handoff_ms as f64 / 1000.0,
        rounds = sizes.rounds,
    );
    out.push_str("| client | acquisitions/s | hand-off gap p50/p99 ms | Redis commands/acquisition | Redis CPU µs/acquisition | overlaps | lock calls out of retries |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for client in CLIENTS {
        let Some(run) = results.lock_run(nodes, Scenario::Handoff, client.id) else {
            continue;
        };
        let gap = run
            .measured
            .gap
            .map(|gap| format!("{:.2} / {:.2}", gap.p50_us / 1000.0, gap.p99_us / 1000.0))
            .unwrap_or_else(|| "–".to_owned());
        let _ = writeln!(
            out,
            "| {} | {} | {gap} | {:.1} | {:.1} | {} | {} |",
            label(&client, &[Some(run)]),
            thousands(run.rate()),
            run.commands_per_op(),
            run.redis_cpu_per_op(),
            run.measured.overlaps,
            run.measured.failures,
        );
    }
}

fn ratio_table(out: &mut String, results: &Results, nodes: usize) {
    let present: Vec<_> = CLIENTS
        .iter()
        .filter(|client| {
            results
                .lock_run(nodes, Scenario::Latency, client.id)
                .is_some()
                || results
                    .lock_run(nodes, Scenario::Throughput, client.id)
                    .is_some()
        })
        .collect();
    if present.len() < 2 {
        return;
    }
    let _ = writeln!(
        out,
        "\n#### {nodes} nodes: pairs/s of the row ÷ pairs/s of the column, S1 · S2\n"
    );
    out.push_str("| row ÷ column |");
    for column in &present {
        let _ = write!(out, " {} |", column.label);
    }
    out.push_str("\n| --- |");
    out.push_str(&" ---: |".repeat(present.len()));
    out.push('\n');
    for row in &present {
        let _ = write!(out, "| {} |", row.label);
        for column in &present {
            let ratio = |scenario| {
                let row = results.lock_run(nodes, scenario, row.id);
                let column = results.lock_run(nodes, scenario, column.id);
                ratio_cell(row, column, LockRun::rate)
            };
            let _ = write!(
                out,
                " {} · {} |",
                ratio(Scenario::Latency),
                ratio(Scenario::Throughput)
            );
        }
        out.push('\n');
    }
}

fn http_table(out: &mut String, results: &Results) {
    let Some(first) = results.http_runs.first() else {
        return;
    };
    let load = &results.sizes.http_load;
    let _ = writeln!(
        out,
        "\n#### {} nodes: S4 axum route, wrk {} thread, {} connections, {} s{}, a fresh resource per request\n",
        first.nodes,
        load.threads,
        load.connections,
        results.sizes.http_ms as f64 / 1000.0,
        match results.sizes.http_rounds {
            0 | 1 => String::new(),
            rounds => format!(" in {rounds} interleaved rounds (median round shown)"),
        },
    );
    out.push_str("| route | server sockets | requests/s | ×bare | ×inline | latency p50/p99 ms | non-2xx | socket errors |\n");
    out.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for nodelay in [false, true] {
        let rate_of = |route: &str| {
            results
                .http_run(route, nodelay)
                .map(|run| run.summary.rate())
        };
        for (route, label) in [
            ("bare", "bare handler"),
            ("inline", "lock + release inline in the handler"),
            ("layer", "`LockLayer`"),
        ] {
            let Some(run) = results.http_run(route, nodelay) else {
                continue;
            };
            let rate = run.summary.rate();
            let against = |other: Option<f64>| {
                other
                    .map(|other| format!("{:.2}", per(rate, other)))
                    .unwrap_or_else(|| "–".to_owned())
            };
            let _ = writeln!(
                out,
                "| {label} | {} | {} | {} | {} | {:.2} / {:.2} | {} | {} |",
                if nodelay {
                    "`TCP_NODELAY`"
                } else {
                    "`axum::serve` defaults"
                },
                thousands(rate),
                against(rate_of("bare")),
                against(rate_of("inline")),
                run.summary.p50_us as f64 / 1000.0,
                run.summary.p99_us as f64 / 1000.0,
                run.summary.non_2xx,
                run.summary.socket_errors,
            );
        }
    }
}

fn core_table(out: &mut String, results: &Results) {
    if results.core_runs.is_empty() {
        return;
    }
    out.push_str(
        "\n#### S5 the sans-IO core alone: one acquire + release, replies fed in memory\n\n",
    );
    out.push_str("| nodes | instructions (callgrind) | native ns |\n| ---: | ---: | ---: |\n");
    for run in &results.core_runs {
        let instructions = run
            .instructions_per_cycle
            .map(thousands)
            .unwrap_or_else(|| "valgrind absent".to_owned());
        let _ = writeln!(
            out,
            "| {} | {instructions} | {:.0} |",
            run.nodes, run.ns_per_cycle
        );
    }
}

/// A target: what it says, the figure, and whether it is met (`None`: not measured).
struct Target {
    what: String,
    measured: String,
    met: Option<bool>,
}

fn targets(results: &Results) -> Vec<Target> {
    let n = 3;
    let run = |scenario, client: &str| results.lock_run(n, scenario, client);
    let mut targets = Vec::new();
    let mut relative = |what: &str,
                        ours: Option<&LockRun>,
                        theirs: Option<&LockRun>,
                        metric: fn(&LockRun) -> f64,
                        bound: f64,
                        at_least: bool| {
        let ratio = ours
            .zip(theirs)
            .map(|(ours, theirs)| per(metric(ours), metric(theirs)));
        targets.push(Target {
            what: what.to_owned(),
            measured: ratio
                .map(|r| format!("{r:.2}×"))
                .unwrap_or_else(|| "not measured".to_owned()),
            met: ratio.map(|r| if at_least { r >= bound } else { r <= bound }),
        });
    };
    for (client, label) in [(OURS, "current-thread"), ("quorumlock-mt", "multi-thread")] {
        relative(
            &format!("S1 pairs/s ≥ 0.9 × floor on the same runtime ({label})"),
            run(Scenario::Latency, client),
            floor_of(results, n, Scenario::Latency, client),
            LockRun::rate,
            0.9,
            true,
        );
        relative(
            &format!("S2 pairs/s ≥ 0.9 × floor on the same runtime ({label})"),
            run(Scenario::Throughput, client),
            floor_of(results, n, Scenario::Throughput, client),
            LockRun::rate,
            0.9,
            true,
        );
    }
    relative(
        "S2 pairs/s ≥ 1.6 × rslock",
        run(Scenario::Throughput, OURS),
        run(Scenario::Throughput, "rslock"),
        LockRun::rate,
        1.6,
        true,
    );
    relative(
        "S2 client CPU per pair ≤ 1.25 × floor",
        run(Scenario::Throughput, OURS),
        run(Scenario::Throughput, FLOOR),
        LockRun::client_cpu_per_op,
        1.25,
        false,
    );
    relative(
        "S3 Redis commands per acquisition ≤ rslock's",
        run(Scenario::Handoff, OURS),
        run(Scenario::Handoff, "rslock"),
        LockRun::commands_per_op,
        1.0,
        false,
    );
    relative(
        "npm package S1 pairs/s ≥ npm redlock 5β",
        run(Scenario::Latency, "quorumlock-npm"),
        run(Scenario::Latency, "npm-redlock"),
        LockRun::rate,
        1.0,
        true,
    );
    relative(
        "npm package S2 pairs/s ≥ npm redlock 5β",
        run(Scenario::Throughput, "quorumlock-npm"),
        run(Scenario::Throughput, "npm-redlock"),
        LockRun::rate,
        1.0,
        true,
    );
    let gap = run(Scenario::Handoff, OURS).and_then(|run| run.measured.gap);
    for (what, pick, bound_ms) in [
        (
            "S3 hand-off gap p50 ≤ 0.5 ms",
            (|g: &Percentiles| g.p50_us) as fn(&Percentiles) -> f64,
            0.5,
        ),
        (
            "S3 hand-off gap p99 ≤ 3 ms",
            |g: &Percentiles| g.p99_us,
            3.0,
        ),
    ] {
        let ms = gap.map(|gap| pick(&gap) / 1000.0);
        targets.push(Target {
            what: what.to_owned(),
            measured: ms
                .map(|ms| format!("{ms:.2} ms"))
                .unwrap_or_else(|| "not measured".to_owned()),
            met: ms.map(|ms| ms <= bound_ms),
        });
    }
    let handoffs: Vec<_> = results
        .lock_runs
        .iter()
        .filter(|run| run.scenario == Scenario::Handoff)
        .collect();
    let overlaps: u64 = handoffs.iter().map(|run| run.measured.overlaps).sum();
    targets.push(Target {
        what: "S3 overlaps = 0 (every client, every node count)".to_owned(),
        measured: format!("{overlaps} in {} runs", handoffs.len()),
        met: (!handoffs.is_empty()).then_some(overlaps == 0),
    });
    for (nodelay, sockets) in [(false, "axum::serve defaults"), (true, "TCP_NODELAY")] {
        let rate = |route| {
            results
                .http_run(route, nodelay)
                .map(|run| run.summary.rate())
        };
        let ratio = rate("layer")
            .zip(rate("inline"))
            .map(|(layer, inline)| per(layer, inline));
        targets.push(Target {
            what: format!("S4 LockLayer requests/s ≥ 0.95 × inline lock/release ({sockets})"),
            measured: ratio
                .map(|r| format!("{r:.2}×"))
                .unwrap_or_else(|| "not measured".to_owned()),
            met: ratio.map(|r| r >= 0.95),
        });
    }
    targets
}

fn targets_table(out: &mut String, results: &Results) {
    out.push_str(
        "\n#### Targets (3 nodes)\n\n| target | measured | met |\n| --- | ---: | :---: |\n",
    );
    for target in targets(results) {
        let met = match target.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(out, "| {} | {} | {met} |", target.what, target.measured);
    }
}

/// The client's name, marked when a run of the row was disturbed by other processes.
fn label(client: &ClientSpec, runs: &[Option<&LockRun>]) -> String {
    let noisy: Vec<String> = runs
        .iter()
        .flatten()
        .filter(|run| run.is_noisy())
        .map(|run| run.scenario.label().to_owned())
        .collect();
    if noisy.is_empty() {
        client.label.to_owned()
    } else {
        format!("{} † {}", client.label, noisy.join(", "))
    }
}

fn cell(run: Option<&LockRun>, show: impl Fn(&LockRun) -> String) -> String {
    run.map(show).unwrap_or_else(|| "–".to_owned())
}

fn ratio_cell(
    ours: Option<&LockRun>,
    theirs: Option<&LockRun>,
    metric: fn(&LockRun) -> f64,
) -> String {
    match ours.zip(theirs) {
        Some((ours, theirs)) if metric(theirs) > 0.0 => {
            format!("{:.2}", metric(ours) / metric(theirs))
        }
        _ => "–".to_owned(),
    }
}

fn micros_pair(percentiles: &Percentiles) -> String {
    format!("{:.0} / {:.0}", percentiles.p50_us, percentiles.p99_us)
}

/// `12345.6` as `12,346`.
pub fn thousands(value: f64) -> String {
    let whole = value.round().max(0.0) as u64;
    let digits = whole.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(93_512.6), "93,513");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }
}
