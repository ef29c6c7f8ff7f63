//! The lock scenarios, once for async clients and once for blocking ones.
//!
//! Each function runs its scenario and returns what it counted; the caller owns the measured
//! window (wall time and CPU) around it, so warm-up runs use the very same code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clients::{BlockingLocker, Locker};
use crate::handoff::Baton;
use crate::stats::Samples;

/// What one scenario run counted.
#[derive(Debug, Default)]
pub struct Tally {
    /// Completed pairs (S1, S2) or acquisitions (S3).
    pub ops: u64,
    /// Lock call durations.
    pub lock: Samples,
    /// Release call durations.
    pub release: Samples,
    /// S3 only: release call to the next acquisition.
    pub gaps: Option<Samples>,
    /// Lock calls that failed.
    pub failures: u64,
    /// S3 only: entries while someone else was inside.
    pub overlaps: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.ops += other.ops;
        self.lock.merge(other.lock);
        self.release.merge(other.release);
        self.failures += other.failures;
        self.overlaps += other.overlaps;
    }
}

/// S1: `pairs` sequential lock+release pairs on fresh resources `{prefix}:{n}`.
pub async fn latency<L: Locker>(locker: &L, prefix: &str, pairs: u64) -> Tally {
    let capacity = usize::try_from(pairs).unwrap_or(0);
    let mut tally = Tally {
        lock: Samples::with_capacity(capacity),
        release: Samples::with_capacity(capacity),
        ..Tally::default()
    };
    for n in 0..pairs {
        pair(locker, format!("{prefix}:{n}"), &mut tally).await;
    }
    tally
}

/// S2: `tasks` tasks sharing `locker`, each doing lock+release pairs on its own fresh
/// resources until `duration` has passed.
pub async fn throughput<L: Locker>(
    locker: &L,
    prefix: &str,
    tasks: usize,
    duration: Duration,
) -> Tally {
    let deadline = Instant::now() + duration;
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let locker = locker.clone();
            let prefix = format!("{prefix}:{task}");
            tokio::spawn(async move {
                let mut tally = Tally {
                    lock: Samples::with_capacity(32 * 1024),
                    release: Samples::with_capacity(32 * 1024),
                    ..Tally::default()
                };
                let mut n = 0u64;
                while Instant::now() < deadline {
                    pair(&locker, format!("{prefix}:{n}"), &mut tally).await;
                    n += 1;
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for handle in handles {
        if let Ok(tally) = handle.await {
            total.merge(tally);
        }
    }
    total
}

async fn pair<L: Locker>(locker: &L, resource: String, tally: &mut Tally) {
    let started = Instant::now();
    match locker.lock(resource).await {
        Ok(held) => {
            let locked = Instant::now();
            tally.lock.record(locked - started);
            locker.release(held).await;
            tally.release.record(locked.elapsed()); // release is called the moment lock returns
            tally.ops += 1;
        }
        Err(_) => tally.failures += 1,
    }
}

/// S3: `contenders` tasks taking turns on `resource` until `duration` has passed. A holder
/// keeps the lock for `hold`, releases it, and sits out until someone else acquired.
pub async fn handoff<L: Locker>(
    locker: &L,
    resource: &str,
    contenders: usize,
    hold: Duration,
    duration: Duration,
) -> Tally {
    let deadline = Instant::now() + duration;
    let baton = Arc::new(Baton::new());
    let handles: Vec<_> = (0..contenders)
        .map(|_| {
            let locker = locker.clone();
            let resource = resource.to_owned();
            let baton = baton.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let held = match locker.lock(resource.clone()).await {
                        Ok(held) => held,
                        Err(_) => {
                            tally.failures += 1;
                            continue;
                        }
                    };
                    let locked = Instant::now();
                    tally.lock.record(locked - started);
                    let mine = baton.enter(locked);
                    tokio::time::sleep(hold).await;
                    baton.leave();
                    let releasing = Instant::now();
                    locker.release(held).await;
                    tally.release.record(releasing.elapsed());
                    baton.wait_turn(mine, deadline).await;
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for handle in handles {
        if let Ok(tally) = handle.await {
            total.merge(tally);
        }
    }
    finish_handoff(total, &baton)
}

fn finish_handoff(mut total: Tally, baton: &Baton) -> Tally {
    total.ops = baton.acquisitions();
    total.overlaps = baton.overlaps();
    total.gaps = Some(baton.take_gaps());
    total
}

/// S1 for a blocking client.
pub fn latency_blocking<L: BlockingLocker>(locker: &L, prefix: &str, pairs: u64) -> Tally {
    let capacity = usize::try_from(pairs).unwrap_or(0);
    let mut tally = Tally {
        lock: Samples::with_capacity(capacity),
        release: Samples::with_capacity(capacity),
        ..Tally::default()
    };
    for n in 0..pairs {
        pair_blocking(locker, &format!("{prefix}:{n}"), &mut tally);
    }
    tally
}

/// S2 for a blocking client: one thread per task, as its users would run it.
pub fn throughput_blocking<L: BlockingLocker>(
    locker: &L,
    prefix: &str,
    tasks: usize,
    duration: Duration,
) -> Tally {
    let deadline = Instant::now() + duration;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                scope.spawn(move || {
                    let mut tally = Tally::default();
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        pair_blocking(locker, &format!("{prefix}:{task}:{n}"), &mut tally);
                        n += 1;
                    }
                    tally
                })
            })
            .collect();
        let mut total = Tally::default();
        for handle in handles {
            if let Ok(tally) = handle.join() {
                total.merge(tally);
            }
        }
        total
    })
}

fn pair_blocking<L: BlockingLocker>(locker: &L, resource: &str, tally: &mut Tally) {
    let started = Instant::now();
    match locker.lock(resource) {
        Ok(held) => {
            let locked = Instant::now();
            tally.lock.record(locked - started);
            locker.release(held);
            tally.release.record(locked.elapsed()); // release is called the moment lock returns
            tally.ops += 1;
        }
        Err(_) => tally.failures += 1,
    }
}

/// S3 for a blocking client: one thread per contender.
pub fn handoff_blocking<L: BlockingLocker>(
    locker: &L,
    resource: &str,
    contenders: usize,
    hold: Duration,
    duration: Duration,
) -> Tally {
    let deadline = Instant::now() + duration;
    let baton = Baton::new();
    let total = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..contenders)
            .map(|_| {
                let baton = &baton;
                scope.spawn(move || {
                    let mut tally = Tally::default();
                    while Instant::now() < deadline {
                        let started = Instant::now();
                        let held = match locker.lock(resource) {
                            Ok(held) => held,
                            Err(_) => {
                                tally.failures += 1;
                                continue;
                            }
                        };
                        let locked = Instant::now();
                        tally.lock.record(locked - started);
                        let mine = baton.enter(locked);
                        std::thread::sleep(hold);
                        baton.leave();
                        let releasing = Instant::now();
                        locker.release(held);
                        tally.release.record(releasing.elapsed());
                        baton.wait_turn_blocking(mine, deadline);
                    }
                    tally
                })
            })
            .collect();
        let mut total = Tally::default();
        for handle in handles {
            if let Ok(tally) = handle.join() {
                total.merge(tally);
            }
        }
        total
    });
    finish_handoff(total, &baton)
}
