//! Test support shared by the sans-IO test crates: one base instant, a seeded generator, a
//! harness that feeds replies by hand and records a transcript, and a multi-node simulator.

// Every test crate includes this module but uses only part of it.
#![allow(dead_code)]

pub mod harness;
pub mod world;

use std::fmt::Write as _;
use std::time::Duration;

use quorumlock::proto::{
    Config, Instant, Operation, Release, Reply, RequestId, Retry, Settings, Token,
};

/// The only real clock read of the sans-IO tests. Everything else is an offset from it, so every
/// run sees the same simulated times.
#[allow(clippy::disallowed_methods)]
pub fn base_instant() -> Instant {
    Instant::now()
}

/// Milliseconds as a `Duration`, which keeps scenario tables short.
pub const fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// The default settings with another TTL and retry policy.
pub fn settings(ttl: Duration, retry: Retry) -> Settings {
    let mut settings = Settings::default();
    settings.ttl = ttl;
    settings.retry = retry;
    settings
}

/// `nodes` nodes, a 10 s TTL (so 102 ms drift and a 200 ms request timeout) and `retry`.
pub fn config(nodes: usize, retry: Retry) -> Config {
    Config::new(nodes, settings(ms(10_000), retry)).expect("valid settings")
}

/// A short readable token, so transcripts and assertions stay legible.
pub fn token(name: &str) -> Token {
    Token::new(name).expect("printable token")
}

/// Request ids `#1..=#count`. Ids cannot be made from outside the core, so they are taken from a
/// release on `count` nodes; a test uses the high ones as ids its operation never issued.
pub fn request_ids(count: usize) -> Vec<RequestId> {
    let config = Config::new(count, Settings::default()).expect("valid settings");
    let mut donor = Release::new(
        &config,
        &["donor".to_owned()],
        &token("donor"),
        base_instant(),
    );
    std::iter::from_fn(|| donor.poll_transmit().map(|t| t.request)).collect()
}

/// SplitMix64: tiny, seedable, and stable across dependency upgrades, so a printed seed replays
/// the same history forever.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound > 0`).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    /// Uniform in `low..=high` for signed values.
    pub fn between_signed(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }

    /// True with probability `per_million / 1_000_000`.
    pub fn chance(&mut self, per_million: u64) -> bool {
        self.below(1_000_000) < per_million
    }

    /// A duration uniform in `low..=high`, to the microsecond.
    pub fn duration(&mut self, low: Duration, high: Duration) -> Duration {
        Duration::from_micros(self.between(low.as_micros() as u64, high.as_micros() as u64))
    }
}

/// `12.345ms`: millisecond resolution with microseconds, wide enough for every transcript.
pub fn show_duration(duration: Duration) -> String {
    format!("{:.3}ms", duration.as_secs_f64() * 1000.0)
}

/// An instant as an offset from the scenario's start: `+12.345ms`.
pub fn show_offset(base: Instant, at: Instant) -> String {
    if at >= base {
        format!("+{}", show_duration(at - base))
    } else {
        format!("-{}", show_duration(base - at))
    }
}

/// A reply the way redis-cli would show it, plus the transport failures.
pub fn show_reply(reply: &Reply) -> String {
    match reply {
        Reply::Ok => "+OK".to_owned(),
        Reply::Nil => "(nil)".to_owned(),
        Reply::Integer(n) => format!("(integer) {n}"),
        Reply::Error(message) => format!("-{message}"),
        Reply::Io(message) => format!("io error: {message}"),
        Reply::TimedOut => "driver timed out".to_owned(),
        Reply::Unexpected(shape) => format!("unexpected reply: {shape}"),
    }
}

/// Joins lines with a trailing newline, as the golden files store them.
pub fn join_lines(lines: &[String]) -> String {
    let mut out = String::new();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    out
}
