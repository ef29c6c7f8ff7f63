//! Leader election for a once-per-tick job, with `with_lock`: several workers (each with its
//! own client, as separate processes would have) compete for one leader lock; the leader runs
//! the job at every tick of a shared schedule while `with_lock` keeps its lock extended, then
//! steps down after a few ticks so another worker takes over. Midway, the leader's task is
//! stopped from outside, as a rolling deploy would; dropping the lock releases it and the next
//! worker carries on. At the end every tick must have run exactly once.
//!
//! ```text
//! cargo run -p quorumlock-examples --bin leader-election
//! ```
//!
//! The last tick done lives in this process here; a real job keeps it next to its output (the
//! table it writes, say), so that a new leader knows where to resume.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quorumlock::{LockContext, Redlock, Retry};
use quorumlock_examples::app::NAMESPACE;
use quorumlock_examples::nodes_from_env_or_local;
use tokio::sync::watch;
use tokio::time::Instant;

const WORKERS: usize = 3;
const TICK: Duration = Duration::from_millis(300);
const TICKS: u64 = 12;
/// Ticks a leader runs before stepping down.
const TERM: u64 = 3;
/// The tick after which the leader of the moment is stopped from outside.
const STOP_LEADER_AFTER: u64 = 7;
const LOCK_TTL: Duration = Duration::from_secs(1);

/// What every worker shares: the schedule, and the job's record of what ran.
struct Schedule {
    start: Instant,
    /// The last tick done; the job's own record.
    done: watch::Sender<u64>,
    /// Who ran each tick, in order of running.
    journal: Mutex<Vec<(u64, String)>>,
}

impl Schedule {
    fn due(&self, tick: u64) -> Instant {
        self.start + TICK * u32::try_from(tick).unwrap_or(u32::MAX)
    }
}

enum Term {
    SteppedDown,
    ScheduleOver,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(problem) => {
            eprintln!("leader-election: {problem}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let nodes = nodes_from_env_or_local()?;
    println!(
        "\n== {WORKERS} workers share one leader lock ({NAMESPACE}cron-leader, TTL {} ms); the \
         leader runs the job every {} ms and steps down after {TERM} ticks",
        LOCK_TTL.as_millis(),
        TICK.as_millis()
    );
    let schedule = Arc::new(Schedule {
        start: Instant::now(),
        done: watch::channel(0).0,
        journal: Mutex::new(Vec::new()),
    });
    let mut workers = Vec::new();
    for index in 1..=WORKERS {
        let redlock = Redlock::builder(nodes.urls.clone())
            .ttl(LOCK_TTL)
            .retry(Retry::new(
                10,
                Duration::from_millis(50),
                Duration::from_millis(25),
            ))
            .build()?;
        let name = format!("worker-{index}");
        workers.push((
            name.clone(),
            tokio::spawn(work(redlock, name, schedule.clone())),
        ));
    }

    // Stop whoever leads once tick STOP_LEADER_AFTER is done.
    let mut done = schedule.done.subscribe();
    done.wait_for(|done| *done >= STOP_LEADER_AFTER).await?;
    let leader = last_runner(&schedule);
    if let Some((name, task)) = workers
        .iter()
        .find(|(name, _)| Some(name) == leader.as_ref())
    {
        println!("   {name} is stopped mid-term, as a deploy would: dropping its lock releases it");
        task.abort();
    }
    for (_, task) in workers {
        // The stopped worker's task ends in a cancellation, which is what was asked.
        let _ = task.await;
    }
    Ok(summarize(&schedule))
}

fn last_runner(schedule: &Schedule) -> Option<String> {
    let journal = schedule.journal.lock().unwrap_or_else(|e| e.into_inner());
    journal.last().map(|(_, name)| name.clone())
}

async fn work(redlock: Redlock, name: String, schedule: Arc<Schedule>) {
    while *schedule.done.borrow() < TICKS {
        let term = redlock
            .lock(format!("{NAMESPACE}cron-leader"))
            .wait_up_to(Duration::from_secs(5))
            .run(|lock| lead(lock, &name, &schedule))
            .await;
        match term {
            Ok(Term::SteppedDown) => {
                println!("   {name} steps down; its lock is released");
                // Let the others take their turn before competing again.
                tokio::time::sleep(TICK).await;
            }
            Ok(Term::ScheduleOver) => break,
            Err(error) if error.is_contended() => {}
            Err(error) => {
                println!("   {name}: {error}");
                tokio::time::sleep(TICK).await;
            }
        }
    }
}

/// Runs the job at each due tick while leading; `with_lock` cancels this if the lock is lost.
async fn lead(lock: LockContext, name: &str, schedule: &Schedule) -> Term {
    for _ in 0..TERM {
        let tick = *schedule.done.borrow() + 1;
        if tick > TICKS {
            return Term::ScheduleOver;
        }
        tokio::time::sleep_until(schedule.due(tick)).await;
        if lock.is_lost() {
            // Never reached in practice: `with_lock` drops this future on loss first.
            break;
        }
        let lease = lock.lease();
        println!(
            "tick {tick:>2}  run by {name}  (lock valid {:>4} ms more, extended {} times)",
            lease.remaining(quorumlock_now()).as_millis(),
            lease.extensions()
        );
        schedule
            .journal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((tick, name.to_owned()));
        schedule.done.send_replace(tick);
    }
    Term::SteppedDown
}

/// The current instant in the type the lease uses.
fn quorumlock_now() -> quorumlock::proto::Instant {
    Instant::now().into_std()
}

/// Prints who ran what; true if every tick ran exactly once.
fn summarize(schedule: &Schedule) -> bool {
    let journal = schedule.journal.lock().unwrap_or_else(|e| e.into_inner());
    let mut runs: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for (tick, name) in journal.iter() {
        runs.entry(*tick).or_default().push(name);
    }
    let twice: Vec<u64> = runs
        .iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|(tick, _)| *tick)
        .collect();
    let missing: Vec<u64> = (1..=TICKS).filter(|t| !runs.contains_key(t)).collect();
    let mut terms: Vec<(String, Vec<u64>)> = Vec::new();
    for (tick, name) in journal.iter() {
        match terms.last_mut() {
            Some((leader, ticks)) if leader == name => ticks.push(*tick),
            _ => terms.push((name.clone(), vec![*tick])),
        }
    }
    println!("\nterms:");
    for (leader, ticks) in &terms {
        let first = ticks.first().copied().unwrap_or_default();
        let last = ticks.last().copied().unwrap_or_default();
        println!("   {leader} led ticks {first}..={last}");
    }
    if twice.is_empty() && missing.is_empty() {
        println!("all {TICKS} ticks ran, each exactly once");
        true
    } else {
        println!("ticks run twice: {twice:?}; ticks never run: {missing:?}");
        false
    }
}
