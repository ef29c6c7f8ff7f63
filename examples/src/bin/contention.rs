//! Several tasks contend for one lock; prints who got it, who was refused and why, with the
//! per-node report. Then one node dies (the lock still works), then a second (no quorum).

// The table shows when each worker got the lock, which needs the clock.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use quorumlock::{Redlock, Retry};
use quorumlock_examples::nodes_from_env_or_local;
use tokio::sync::Barrier;

const WORKERS: usize = 6;
const RESOURCE: &str = "demo:nightly-report";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let nodes = nodes_from_env_or_local()?;
    let redlock = Redlock::builder(nodes.urls.clone())
        .ttl(Duration::from_secs(5))
        .retry(Retry::new(
            50,
            Duration::from_millis(20),
            Duration::from_millis(10),
        ))
        .build()?;

    println!("\n== {WORKERS} workers try once, at the same moment, to lock {RESOURCE:?}");
    let barrier = Arc::new(Barrier::new(WORKERS));
    let mut tasks = Vec::new();
    for worker in 1..=WORKERS {
        let (redlock, barrier) = (redlock.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let outcome = redlock.try_lock(RESOURCE).await;
            let line = match &outcome {
                Ok(lock) => format!("got the lock      | {}", lock.report()),
                Err(error) => format!("refused           | {error}"),
            };
            // Winners keep the lock until every attempt is over, so the refusals are real.
            barrier.wait().await;
            if let Ok(lock) = outcome {
                lock.release().await;
            }
            (worker, line)
        }));
    }
    println!(
        "{:<9} | {:<17} | why / per-node report",
        "worker", "outcome"
    );
    for task in tasks {
        let (worker, line) = task.await?;
        println!("worker-{worker:<2} | {line}");
    }

    println!("\n== the same workers queue up with retries; each holds the lock for 30 ms");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 1..=WORKERS {
        let redlock = redlock.clone();
        tasks.push(tokio::spawn(async move {
            let lock = redlock.lock(RESOURCE).await;
            let waited = started.elapsed();
            let attempts_line = match &lock {
                Ok(lock) => format!("validity {:>5} ms", lock.remaining().as_millis()),
                Err(error) => format!("gave up: {error}"),
            };
            if let Ok(lock) = lock {
                tokio::time::sleep(Duration::from_millis(30)).await;
                lock.release().await;
            }
            (worker, waited, attempts_line)
        }));
    }
    let mut rows = Vec::new();
    for task in tasks {
        rows.push(task.await?);
    }
    rows.sort_by_key(|(_, waited, _)| *waited);
    println!("{:<9} | {:>10} | lock", "worker", "got it at");
    for (worker, waited, line) in rows {
        println!("worker-{worker:<2} | {:>7} ms | {line}", waited.as_millis());
    }

    if let Some(cluster) = &nodes.local {
        println!("\n== node 2 is killed: a quorum of 2 out of 3 still grants the lock");
        cluster.kill(2)?;
        match redlock.try_lock(RESOURCE).await {
            Ok(lock) => {
                println!("granted | {}", lock.report());
                lock.release().await;
            }
            Err(error) => println!("unexpected: {error}"),
        }
        println!("\n== node 1 is killed too: no quorum is possible, nothing is left locked");
        cluster.kill(1)?;
        match redlock.try_lock(RESOURCE).await {
            Ok(lock) => println!("unexpected: granted | {}", lock.report()),
            Err(error) => println!("refused | {error}"),
        }
    }
    Ok(())
}
