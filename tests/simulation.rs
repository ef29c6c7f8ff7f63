//! Mutual exclusion under a deterministic simulation: competing clients, Redis nodes with real
//! key stores, a lossy network, skewed clocks, pauses and restarts, all on one simulated clock.
//!
//! A failing history prints its seed; replay it with
//! `QUORUMLOCK_SIM_SEED=<seed> cargo test --test simulation histories_replay -- --nocapture`.

mod sim;

use std::thread;
use std::time::Duration;

use quorumlock::proto::{Config, Retry, Settings};

use sim::world::{self, ClientPlan, Cycle, Fault, History, Network, Scenario, Stats};
use sim::{base_instant, ms, SeededRng};

const HISTORIES: u64 = 10_000;
const WORKERS: u64 = 2;
/// Clock rates stay within ±0.4% of true time, so any two clocks drift apart by less than the
/// 1% the default drift factor allows for.
const MAX_SKEW_PPM: i64 = 4_000;

/// A random history within the design's assumptions: skew below the drift allowance, and a
/// crashed node comes back only after a full TTL.
fn random_scenario(seed: u64, trace: bool) -> Scenario {
    let mut rng = SeededRng::new(seed);
    let nodes = if rng.chance(500_000) { 3 } else { 5 };
    let ttl = if rng.chance(500_000) {
        ms(300)
    } else {
        ms(1000)
    };
    let delay = rng.duration(ms(5), ms(60));
    let jitter = rng.duration(Duration::ZERO, delay / 2);
    let retry = if rng.chance(300_000) {
        Retry::until(ttl * 2, delay, jitter)
    } else {
        Retry::new(rng.between(0, 6) as u32, delay, jitter)
    };
    let mut settings = Settings::default();
    settings.ttl = ttl;
    settings.retry = retry;
    settings.max_extensions = rng.chance(250_000).then(|| rng.between(1, 3) as u32);
    settings.max_hold = rng.chance(250_000).then(|| ttl * rng.between(1, 3) as u32);
    let config = Config::new(nodes, settings).expect("generated settings are valid");
    let timeout = config.request_timeout();

    let two_resources = rng.chance(500_000);
    let pick_resources = |rng: &mut SeededRng| -> Vec<String> {
        match (two_resources, rng.below(3)) {
            (false, _) | (true, 0) => vec!["r1".to_owned()],
            (true, 1) => vec!["r2".to_owned()],
            (true, _) => vec!["r1".to_owned(), "r2".to_owned()],
        }
    };
    let client_count = rng.between(3, 5) as usize;
    let clients = (0..client_count)
        .map(|_| {
            let cycles = (0..rng.between(1, 3))
                .map(|index| Cycle {
                    start_after: if index == 0 {
                        rng.duration(Duration::ZERO, ms(20))
                    } else {
                        rng.duration(Duration::ZERO, ttl / 2)
                    },
                    resources: pick_resources(&mut rng),
                    hold: rng.duration(ttl / 20, ttl * 2),
                    extend: rng.chance(500_000),
                })
                .collect();
            ClientPlan {
                clock_ppm: rng.between_signed(-MAX_SKEW_PPM, MAX_SKEW_PPM),
                cycles,
            }
        })
        .collect();
    let node_clock_ppm = (0..nodes)
        .map(|_| rng.between_signed(-MAX_SKEW_PPM, MAX_SKEW_PPM))
        .collect();

    let mut faults = Vec::new();
    // A node's outages never overlap: an `Up` meant to end a partition must not cut short the
    // delay of a crashed node's restart.
    let mut node_back_at = vec![Duration::ZERO; nodes];
    for _ in 0..rng.between(0, 4) {
        let node = rng.below(nodes as u64) as usize;
        let at = node_back_at[node] + rng.duration(Duration::ZERO, ttl * 2);
        match rng.below(4) {
            0 => {
                let back = at + rng.duration(ms(1), ttl * 2);
                faults.push((at, Fault::Down(node)));
                faults.push((back, Fault::Up(node)));
                node_back_at[node] = back;
            }
            1 => {
                // Delayed restart: every key the node held has expired by the time it is back,
                // even on a fast node clock.
                let back = at + ttl.mul_f64(1.01) + rng.duration(Duration::ZERO, ttl);
                faults.push((at, Fault::Crash(node)));
                faults.push((back, Fault::Up(node)));
                node_back_at[node] = back;
            }
            2 => faults.push((at, Fault::FlushScripts(node))),
            _ => {
                let client = rng.below(client_count as u64) as usize;
                let length = rng.duration(ms(1), ttl + ttl / 2);
                faults.push((at, Fault::Pause { client, length }));
            }
        }
    }

    let network = Network {
        latency: (
            rng.duration(Duration::from_micros(100), ms(1)),
            rng.duration(ms(2), timeout / 3),
        ),
        slow_per_million: rng.between(0, 30_000),
        slow_latency: (timeout / 2, timeout * 3),
        loss_per_million: rng.between(0, 20_000),
    };

    Scenario {
        config,
        node_clock_ppm,
        clients,
        faults,
        network,
        seed: rng.next_u64(),
        trace,
    }
}

/// Why a history breaks the lock's promises, if it does.
fn problem(history: &History) -> Option<String> {
    if let Some(stuck) = &history.stuck {
        return Some(stuck.clone());
    }
    let overlaps = history.overlaps();
    let first = overlaps.first()?;
    Some(format!(
        "{} overlapping holders; first on {:?}: client {} held {:.3}..{:.3}ms, client {} held {:.3}..{:.3}ms",
        overlaps.len(),
        first.resource,
        first.first.client,
        first.first.from as f64 / 1e6,
        first.first.until as f64 / 1e6,
        first.second.client,
        first.second.from as f64 / 1e6,
        first.second.until as f64 / 1e6,
    ))
}

#[test]
fn no_two_holders_overlap_in_ten_thousand_histories() {
    let base = base_instant();
    let results: Vec<(u64, Stats, Vec<String>)> = thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|worker| {
                scope.spawn(move || {
                    let mut histories = 0;
                    let mut stats = Stats::default();
                    let mut failures = Vec::new();
                    for seed in (worker..HISTORIES).step_by(WORKERS as usize) {
                        let history = world::run(&random_scenario(seed, false), base);
                        histories += 1;
                        stats += history.stats;
                        if let Some(problem) = problem(&history) {
                            failures.push(format!("seed {seed}: {problem}"));
                        }
                    }
                    (histories, stats, failures)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a simulation worker panicked"))
            .collect()
    });

    let mut histories = 0;
    let mut stats = Stats::default();
    let mut failures = Vec::new();
    for (count, worker_stats, worker_failures) in results {
        histories += count;
        stats += worker_stats;
        failures.extend(worker_failures);
    }
    println!(
        "{histories} histories: {} acquires, {} acquired, {} attempts, {} contended attempts, \
         {} extensions ({} failed), {} releases",
        stats.acquires,
        stats.acquired,
        stats.attempts,
        stats.contended_attempts,
        stats.extensions,
        stats.extend_failures,
        stats.releases,
    );
    println!(
        "faults seen: {} unawaited replies, {} NOSCRIPT replies, {} refused connections, \
         {} lost messages; {} events",
        stats.unawaited_replies,
        stats.noscript_replies,
        stats.refused_connections,
        stats.lost_messages,
        stats.events,
    );
    assert!(
        failures.is_empty(),
        "{} histories failed (replay with QUORUMLOCK_SIM_SEED=<seed>):\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(histories, HISTORIES);
    // The check is only worth something if locks are actually taken, contended and stressed.
    assert!(
        stats.acquired * 10 >= stats.acquires * 3,
        "only {} of {} acquires succeeded",
        stats.acquired,
        stats.acquires
    );
    assert!(
        stats.contended_attempts * 10 >= stats.attempts,
        "too little contention"
    );
    assert!(stats.extensions > 0 && stats.extend_failures > 0);
    assert!(stats.unawaited_replies > 0);
    assert!(stats.noscript_replies > 0);
    assert!(stats.refused_connections > 0);
    assert!(stats.lost_messages > 0);
}

#[test]
fn histories_replay_exactly_from_their_seed() {
    let requested = std::env::var("QUORUMLOCK_SIM_SEED").ok();
    let seeds: Vec<u64> = match &requested {
        Some(list) => list
            .split(',')
            .map(|seed| {
                seed.trim()
                    .parse()
                    .expect("QUORUMLOCK_SIM_SEED is a list of seeds")
            })
            .collect(),
        None => vec![0, 1, 2, 3, 42, 9_999],
    };
    let mut fingerprints = Vec::new();
    for &seed in &seeds {
        // Two different base instants: nothing may depend on the real clock.
        let first = world::run(&random_scenario(seed, true), base_instant());
        let second = world::run(&random_scenario(seed, true), base_instant());
        if requested.is_some() {
            println!("--- seed {seed}");
            for line in &first.trace {
                println!("{line}");
            }
        }
        if let Some(problem) = problem(&first) {
            panic!("seed {seed}: {problem}");
        }
        assert_eq!(first.fingerprint, second.fingerprint, "seed {seed}");
        assert_eq!(first.trace, second.trace, "seed {seed}");
        assert_eq!(first.holds, second.holds, "seed {seed}");
        assert_eq!(first.stats, second.stats, "seed {seed}");
        assert!(!first.trace.is_empty());
        fingerprints.push(first.fingerprint);
    }
    fingerprints.sort_unstable();
    fingerprints.dedup();
    assert_eq!(
        fingerprints.len(),
        seeds.len(),
        "different seeds must give different histories"
    );
}

/// Client 0 takes the lock while node 2 is unreachable, so only nodes 0 and 1 hold its key.
/// Node 1 then crashes and comes back after `restart_after` without its keys. Client 1 tries the
/// same resource while client 0 still holds it.
fn restart_scenario(restart_after: Duration, crash: bool) -> Scenario {
    let mut settings = Settings::default();
    settings.ttl = ms(1000);
    settings.retry = Retry::until(ms(3000), ms(50), Duration::ZERO);
    let config = Config::new(3, settings).expect("valid settings");
    let cycle = |start_after, hold| Cycle {
        start_after,
        resources: vec!["r".to_owned()],
        hold,
        extend: false,
    };
    let stop = if crash {
        Fault::Crash(1)
    } else {
        Fault::Down(1)
    };
    Scenario {
        config,
        node_clock_ppm: vec![0; 3],
        clients: vec![
            ClientPlan {
                clock_ppm: 0,
                cycles: vec![cycle(Duration::ZERO, ms(800))],
            },
            ClientPlan {
                clock_ppm: 0,
                cycles: vec![cycle(ms(200), ms(100))],
            },
        ],
        faults: vec![
            (Duration::ZERO, Fault::Down(2)),
            (ms(50), Fault::Up(2)),
            (ms(100), stop),
            (ms(100) + restart_after, Fault::Up(1)),
        ],
        network: Network::fixed(ms(1)),
        seed: 7,
        trace: true,
    }
}

fn holds_of(history: &History, client: usize) -> Vec<&world::Hold> {
    history
        .holds
        .iter()
        .filter(|hold| hold.client == client)
        .collect()
}

#[test]
fn an_immediate_restart_without_persistence_can_grant_a_second_holder() {
    let history = world::run(&restart_scenario(ms(1), true), base_instant());
    for line in &history.trace {
        println!("{line}");
    }
    assert!(history.stuck.is_none(), "{:?}", history.stuck);
    let overlaps = history.overlaps();
    assert_eq!(overlaps.len(), 1, "expected exactly one double grant");
    let overlap = &overlaps[0];
    assert_eq!(overlap.resource, "r");
    assert_eq!((overlap.first.client, overlap.second.client), (0, 1));
    // Client 1 got the lock on its first try, long before client 0 let go.
    assert!(overlap.second.from < ms(210).as_nanos() as u64);
    assert!(overlap.first.until >= ms(800).as_nanos() as u64);
}

#[test]
fn a_restart_delayed_by_the_ttl_keeps_holders_apart() {
    let history = world::run(&restart_scenario(ms(1000), true), base_instant());
    for line in &history.trace {
        println!("{line}");
    }
    assert!(history.stuck.is_none(), "{:?}", history.stuck);
    assert!(history.overlaps().is_empty(), "{:?}", history.overlaps());
    let (first, second) = (holds_of(&history, 0), holds_of(&history, 1));
    assert_eq!(
        (first.len(), second.len()),
        (1, 1),
        "both clients get the lock"
    );
    assert!(second[0].from >= first[0].until);
    // Client 1 waited for client 0's release rather than for the crashed node.
    assert!(second[0].from < ms(900).as_nanos() as u64);
}

#[test]
fn an_immediate_restart_that_keeps_its_keys_is_safe() {
    let history = world::run(&restart_scenario(ms(1), false), base_instant());
    assert!(history.stuck.is_none(), "{:?}", history.stuck);
    assert!(history.overlaps().is_empty(), "{:?}", history.overlaps());
    let (first, second) = (holds_of(&history, 0), holds_of(&history, 1));
    assert_eq!(
        (first.len(), second.len()),
        (1, 1),
        "both clients get the lock"
    );
    assert!(second[0].from >= first[0].until);
}
