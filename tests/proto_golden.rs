//! Golden transcripts: what the machines send, and decide, in canonical scenarios, compared line
//! by line with the checked-in text in `tests/golden/`.
//!
//! After an intended change, regenerate with `UPDATE_GOLDEN=1 cargo test --test proto_golden`
//! and review the diff.

mod sim;

use std::path::PathBuf;
use std::time::Duration;

use quorumlock::proto::{
    Acquire, Config, Extend, Instant, Lease, Operation, Release, Reply, Retry,
};

use sim::harness::{Describe, Harness};
use sim::{base_instant, config, join_lines, ms, show_duration, show_offset, token};

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("golden")
        .join(format!("{name}.txt"))
}

/// Compares `actual` with the golden file, or rewrites the file when `UPDATE_GOLDEN=1`.
#[track_caller]
fn check_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("a parent folder"))
            .expect("create tests/golden");
        std::fs::write(&path, actual).expect("write the golden file");
        println!("rewrote {}", path.display());
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "cannot read {} ({error}); create it with UPDATE_GOLDEN=1\n--- actual ---\n{actual}",
            path.display()
        )
    });
    if expected == actual {
        return;
    }
    let expected_lines: Vec<&str> = expected.lines().collect();
    let actual_lines: Vec<&str> = actual.lines().collect();
    let first_difference = expected_lines
        .iter()
        .zip(&actual_lines)
        .position(|(e, a)| e != a)
        .unwrap_or(expected_lines.len().min(actual_lines.len()));
    panic!(
        "{} differs from the machine's transcript at line {}:\n  expected: {}\n  actual:   {}\n\
         (rerun with UPDATE_GOLDEN=1 if the change is intended)\n--- actual ---\n{actual}",
        path.display(),
        first_difference + 1,
        expected_lines
            .get(first_difference)
            .unwrap_or(&"<end of file>"),
        actual_lines
            .get(first_difference)
            .unwrap_or(&"<end of file>"),
    );
}

fn header(title: &str, config: &Config) -> Vec<String> {
    let retry = config.retry();
    vec![
        format!("# {title}"),
        format!(
            "# nodes {}, quorum {}, ttl {}, drift {}, request timeout {}, min validity {}",
            config.nodes(),
            config.quorum(),
            show_duration(config.ttl()),
            show_duration(config.drift()),
            show_duration(config.request_timeout()),
            show_duration(config.min_validity()),
        ),
        format!(
            "# retry: {} retries, delay {} ± {}",
            retry.retries,
            show_duration(retry.delay),
            show_duration(retry.jitter),
        ),
    ]
}

fn transcript<O>(title: &str, config: &Config, harness: &Harness<O>) -> String
where
    O: Operation,
    O::Output: Describe,
{
    transcript_with(title, config, &[], harness)
}

fn transcript_with<O>(
    title: &str,
    config: &Config,
    notes: &[String],
    harness: &Harness<O>,
) -> String
where
    O: Operation,
    O::Output: Describe,
{
    assert!(
        harness.outcome().is_some(),
        "a golden scenario must reach its outcome"
    );
    let mut lines = header(title, config);
    lines.extend(notes.iter().map(|note| format!("# {note}")));
    lines.extend(harness.lines().iter().cloned());
    join_lines(&lines)
}

fn acquire(config: &Config, resources: &[&str], seed: u64) -> Harness<Acquire> {
    let base = base_instant();
    let op = Acquire::new(
        config,
        resources.iter().copied(),
        token("tok-a"),
        seed,
        base,
    )
    .expect("valid resources");
    Harness::new(op, base)
}

fn noscript() -> Reply {
    Reply::Error("NOSCRIPT No matching script. Please use EVAL.".to_owned())
}

fn micros(value: u64) -> Duration {
    Duration::from_micros(value)
}

/// A lock held on every node since `base`, for the extend and release scenarios.
fn held(config: &Config, base: Instant) -> Lease {
    let op = Acquire::new(config, ["job"], token("tok-a"), 1, base).expect("valid resources");
    let mut harness = Harness::new(op, base);
    for node in 0..config.nodes() {
        harness.at(ms(2)).reply(node, Reply::Ok);
    }
    harness.expect_outcome().clone().expect("granted")
}

fn lease_note(lease: &Lease, base: Instant) -> String {
    format!(
        "held since {}, valid until {}, {} extensions",
        show_offset(base, lease.acquired_at()),
        show_offset(base, lease.valid_until()),
        lease.extensions()
    )
}

#[test]
fn acquire_three_nodes_all_grant() {
    let config = config(3, Retry::NONE);
    let mut harness = acquire(&config, &["job"], 1);
    harness.at(micros(1_200)).reply(0, Reply::Ok);
    harness.at(micros(1_500)).reply(2, Reply::Ok);
    harness.at(micros(2_100)).reply(1, Reply::Ok);
    check_golden(
        "acquire_three_nodes_all_grant",
        &transcript("three nodes, all grant", &config, &harness),
    );
}

#[test]
fn acquire_contention_then_retry() {
    let config = config(3, Retry::new(3, ms(100), ms(20)));
    let mut harness = acquire(&config, &["job"], 42);
    harness.at(ms(1)).reply(0, Reply::Nil);
    harness.at(ms(2)).reply(1, Reply::Nil);
    harness.at(ms(3)).reply(0, Reply::Integer(0));
    harness.reply(1, Reply::Integer(0));
    harness.at(ms(4)).reply(2, Reply::Integer(0));
    let late = harness.sent()[2].transmit.clone();
    harness.at(ms(5)).feed(late.node, late.request, Reply::Nil);
    harness.fire_timeout();
    let start = harness.now() - harness.base();
    for node in 0..3 {
        harness
            .at(start + ms(1 + node as u64))
            .reply(node, Reply::Ok);
    }
    check_golden(
        "acquire_contention_then_retry",
        &transcript(
            "held by another owner, released everywhere, retried after a jittered delay",
            &config,
            &harness,
        ),
    );
}

#[test]
fn acquire_one_node_down() {
    let config = config(3, Retry::NONE);
    let mut harness = acquire(&config, &["job"], 1);
    harness
        .at(micros(300))
        .reply(1, Reply::Io("connection refused".to_owned()));
    harness.at(ms(1)).reply(0, Reply::Ok);
    harness.at(micros(1_400)).reply(2, Reply::Ok);
    check_golden(
        "acquire_one_node_down",
        &transcript("one node down, the other two grant", &config, &harness),
    );
}

#[test]
fn release_noscript_fallback() {
    let config = config(3, Retry::NONE);
    let base = base_instant();
    let lease = held(&config, base);
    let at = base + ms(3_000);
    let mut harness = Harness::new_at(Release::for_lease(&config, &lease, at), base, at);
    harness.at(ms(3_001)).reply(1, noscript());
    harness.at(ms(3_002)).reply(0, Reply::Integer(1));
    harness.at(ms(3_003)).reply(2, Reply::Integer(1));
    harness.at(ms(3_004)).reply(1, Reply::Integer(1));
    check_golden(
        "release_noscript_fallback",
        &transcript_with(
            "a node lost its script cache: EVAL to that node only",
            &config,
            &[lease_note(&lease, base)],
            &harness,
        ),
    );
}

#[test]
fn acquire_multi_resource_five_nodes() {
    let config = config(5, Retry::NONE);
    let mut harness = acquire(&config, &["orders", "invoices"], 1);
    harness.at(ms(1)).reply(0, Reply::Integer(1));
    harness.at(ms(2)).reply(1, Reply::Integer(0));
    harness.at(ms(3)).reply(2, Reply::Integer(1));
    harness.at(ms(4)).reply(
        3,
        Reply::Error("ERR max number of clients reached".to_owned()),
    );
    harness.at(ms(5)).reply(4, Reply::Integer(1));
    check_golden(
        "acquire_multi_resource_five_nodes",
        &transcript(
            "two resources on five nodes: one refuses, one fails, three grant",
            &config,
            &harness,
        ),
    );
}

#[test]
fn acquire_contended_without_retry() {
    let config = config(3, Retry::NONE);
    let mut harness = acquire(&config, &["job"], 1);
    harness.at(ms(1)).reply(0, Reply::Nil);
    harness.at(ms(2)).reply(2, Reply::Nil);
    harness.at(ms(3)).reply(0, Reply::Integer(0));
    harness.reply(2, Reply::Integer(0));
    harness.fire_timeout();
    check_golden(
        "acquire_contended_without_retry",
        &transcript(
            "held by another owner; the silent node's release times out",
            &config,
            &harness,
        ),
    );
}

#[test]
fn extend_granted() {
    let config = config(3, Retry::NONE);
    let base = base_instant();
    let lease = held(&config, base);
    let at = base + ms(5_000);
    let mut harness = Harness::new_at(Extend::new(&config, &lease, 1, at), base, at);
    harness.at(ms(5_002)).reply(1, Reply::Integer(1));
    harness.at(ms(5_003)).reply(0, Reply::Integer(1));
    check_golden(
        "extend_granted",
        &transcript_with(
            "extend half-way through the validity",
            &config,
            &[lease_note(&lease, base)],
            &harness,
        ),
    );
}

#[test]
fn extend_lost() {
    let config = config(3, Retry::NONE);
    let base = base_instant();
    let lease = held(&config, base);
    let at = base + ms(5_000);
    let mut harness = Harness::new_at(Extend::new(&config, &lease, 1, at), base, at);
    harness.at(ms(5_001)).reply(2, Reply::Integer(0));
    harness.at(ms(5_002)).reply(0, Reply::Integer(0));
    check_golden(
        "extend_lost",
        &transcript_with(
            "the keys expired or changed hands: the lock is lost",
            &config,
            &[lease_note(&lease, base)],
            &harness,
        ),
    );
}

#[test]
fn release_with_a_silent_node() {
    let config = config(3, Retry::NONE);
    let base = base_instant();
    let lease = held(&config, base);
    let at = base + ms(3_000);
    let mut harness = Harness::new_at(Release::for_lease(&config, &lease, at), base, at);
    harness.at(ms(3_001)).reply(0, Reply::Integer(1));
    harness.at(ms(3_002)).reply(2, Reply::Integer(1));
    harness.fire_timeout();
    check_golden(
        "release_with_a_silent_node",
        &transcript_with(
            "release decides at a quorum; the silent node is waited for after the outcome",
            &config,
            &[lease_note(&lease, base)],
            &harness,
        ),
    );
}
